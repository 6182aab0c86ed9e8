// An application with no JWT code: java.net.http.HttpClient through the agent
// (run as a single source file: `java Caller.java URL`).
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.regex.Pattern;

public class Caller {
    public static void main(String[] args) throws Exception {
        var client = HttpClient.newHttpClient();
        var request = HttpRequest.newBuilder(URI.create(args[0] + "/whoami")).build();
        var resp = client.send(request, HttpResponse.BodyHandlers.ofString());
        var appId = Pattern.compile("\"appId\":\"([^\"]+)\"").matcher(resp.body());
        System.out.println(resp.statusCode() + " " + (appId.find() ? appId.group(1) : "?"));
    }
}
